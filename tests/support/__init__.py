"""Test support: throwaway servers and small factories."""
