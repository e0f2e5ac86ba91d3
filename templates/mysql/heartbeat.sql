-- Replication heartbeat (tasks/mysql.py): the primary writes the time every second; on a
-- replica, now minus that time is the true lag, also when idle or after a restart (unlike
-- Seconds_Behind_Master). Events replicate disabled, so only the primary runs it.
CREATE DATABASE IF NOT EXISTS ha_heartbeat;
CREATE TABLE IF NOT EXISTS ha_heartbeat.heartbeat (
    id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
    ts DATETIME(6) NOT NULL,
    server_id INT UNSIGNED NOT NULL
) ENGINE=InnoDB;
CREATE EVENT IF NOT EXISTS ha_heartbeat.beat ON SCHEDULE EVERY 1 SECOND
    DO REPLACE INTO ha_heartbeat.heartbeat (id, ts, server_id)
       VALUES (1, UTC_TIMESTAMP(6), @@server_id);
