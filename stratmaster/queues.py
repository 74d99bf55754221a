"""Task queue names: one worker process per queue, scaled independently."""
RESEARCH = "research-tasks"
INGESTION = "ingestion-tasks"
MISSIONS = "mission-tasks"
MAINTENANCE = "maintenance-tasks"

ALL = (RESEARCH, INGESTION, MISSIONS, MAINTENANCE)
