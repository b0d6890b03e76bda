"""Dunning: what happens after a charge fails - a grace period with access kept, retries on the plan's
schedule, notices, and a final action when the schedule is exhausted; ended the moment the invoice is paid."""
