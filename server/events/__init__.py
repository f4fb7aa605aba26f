"""What Subgate hands on: the payload of each stored event (the same in the push and in the
feed), the feed's opaque cursors, and the signal that new events may have been written."""
