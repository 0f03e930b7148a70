-- 0008_login_lockout: users locked out by failed logins (mdm/core/login_guard.ts), so that a lock
-- survives an MDM restart and, replicated like every table (row_capture.ts), an HA takeover. Only
-- locks are kept, written when a user becomes locked and deleted when the lock is cleared (a
-- success after it ended, resetPassword, removeUser); failed logins that have not locked anyone
-- stay in memory.

CREATE TABLE login_lockout (
  user_name TEXT PRIMARY KEY NOT NULL,
  locked_at_ms INTEGER NOT NULL,
  locked_until_ms INTEGER NOT NULL
);
