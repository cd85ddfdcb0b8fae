-- Business hours of a queue (crate::acd::hours): a weekly schedule such as
-- `mon-fri 09:00-18:00; sat 10:00-14:00` in an IANA time zone; NULL hours:
-- always open. Callers outside them hear closed_message.
ALTER TABLE queues ADD COLUMN hours TEXT;
ALTER TABLE queues ADD COLUMN timezone TEXT;
ALTER TABLE queues ADD COLUMN closed_message TEXT;
