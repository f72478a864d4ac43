"""Who is calling and what they may do: tenants, roles and bearer tokens (no gRPC, no HTTP here)."""
