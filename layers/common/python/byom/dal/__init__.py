"""Data access: the only code that calls boto3. AWS errors become domain errors here."""
