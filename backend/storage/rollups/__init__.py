"""The rollups: what is counted, flagged and summed, written and read in one place."""
