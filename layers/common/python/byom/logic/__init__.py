"""Business rules: no HTTP, no boto3; collaborators come in as arguments."""
