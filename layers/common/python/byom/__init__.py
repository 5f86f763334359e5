"""BYOM Gateway runtime: domain logic, data access and HTTP plumbing shared by every Lambda."""
