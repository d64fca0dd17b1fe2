"""lthutils: a study kit for the Lottery Ticket Hypothesis (see README.md)."""
