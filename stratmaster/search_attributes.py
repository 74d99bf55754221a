"""Search attributes set on every mission-scoped workflow, so operators can find a
mission's workflows in the Web UI / `temporal workflow list --query "Mission='demo'"`."""
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

MISSION_SA = SearchAttributeKey.for_keyword("Mission")


def for_mission(mission: str) -> TypedSearchAttributes:
    return TypedSearchAttributes([SearchAttributePair(MISSION_SA, mission)])
