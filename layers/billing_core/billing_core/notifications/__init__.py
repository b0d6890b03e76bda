"""Customer notices: one email per notice document on CustomerNotificationsQueue (a trial ending, a dunning step),
at most one per `notice_id`, with the address resolved from the payment provider at send time and never stored."""
