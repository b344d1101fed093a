"""ACME's task types for taskhub. The worker loads `acme_reports.handlers`
(TASKHUB_HANDLER_MODULES=acme_reports.handlers)."""
