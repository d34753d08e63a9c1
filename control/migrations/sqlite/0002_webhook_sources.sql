-- Webhook sources: their settings (JSON, no secret) and their signing secret, sealed
-- like destination credentials. NULL for write-key sources.
ALTER TABLE sources ADD COLUMN webhook TEXT;
ALTER TABLE sources ADD COLUMN webhook_secret BLOB;
