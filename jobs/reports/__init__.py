"""What people read: weekly figures, renderers and templates, alerts, e-mail content."""
