"""One APIRouter per area. `starters/api/application.py` includes every module named
in its ROUTERS tuple: a new area is one module here exposing `router` plus its name
in that tuple."""
