"""Documents rendered for people: the custody report of an export package."""
