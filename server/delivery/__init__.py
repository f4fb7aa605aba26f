"""Pushing events to the merchant's destinations: signed as Standard Webhooks, retried with
backoff, in order per user, each attempt kept."""
