"""Support package of app-one."""

GREETING = "hello from onehelp"
