"""HTTP: the TAXII 2.1 server and the JSON API. Thin: parse, call a service, render."""
