"""Platform basics used by every concern: settings, warehouse access, the event log, SQL quoting."""
