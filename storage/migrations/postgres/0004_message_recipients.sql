-- Sends to several recipients (or to a platform-chosen audience), with what the answer warned.
-- recipients: JSON list of the ledger user ids the message goes to (each has a spend event);
-- skipped: JSON list of {"user_id", "reason"} left out by the consent check; warnings: JSON list
-- of strings; ledger_channel: the ledger channel consent was checked and spent on.
ALTER TABLE messages ADD COLUMN recipients TEXT NOT NULL DEFAULT '[]';
ALTER TABLE messages ADD COLUMN skipped TEXT NOT NULL DEFAULT '[]';
ALTER TABLE messages ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]';
ALTER TABLE messages ADD COLUMN ledger_channel TEXT COLLATE "C" NOT NULL DEFAULT '';
UPDATE messages SET recipients = json_build_array(user_id)::text, ledger_channel = channel;

-- Send limits count an app's messages on a channel in a rolling window.
CREATE INDEX messages_by_app_channel ON messages (app_id, channel, created_at);

-- "Any unfollow of this app in the last day?" without reading the app's whole log.
CREATE INDEX consent_events_by_action ON consent_events (app_id, channel, action, occurred_at);
