"""Adapters implement the contexts' ports with boto3, Powertools and the stripe SDK, and translate every
provider error into the domain's vocabulary (billing_core.errors). dynamodb/ holds one store per aggregate."""
