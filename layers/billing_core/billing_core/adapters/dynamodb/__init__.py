"""One store per aggregate (each owns its items and conditions) over table.py's shared DynamoDB mechanics;
writes that span aggregates compose the owners' transaction parts."""
