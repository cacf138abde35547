"""Services: each owns its transactions and enforces the sharing model."""
