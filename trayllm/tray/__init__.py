"""The tray icon: daemon health at a glance, a menu, and desktop notifications for alerts."""
