"""scheduling: periodic tasks, cron jobs, calendars, and the scheduler that fires them."""
