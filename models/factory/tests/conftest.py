"""Makes the factory's packages (common/, restore/, ...) importable however pytest is started."""
import sys
from pathlib import Path

FACTORY = Path(__file__).resolve().parents[1]
if str(FACTORY) not in sys.path:
    sys.path.insert(0, str(FACTORY))
