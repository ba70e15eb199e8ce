"""muscale: width-scaling and μP transfer analysis."""

from .coordcheck import coord_check, plan
from .fit import fit_exponents
from .report import write_report

__all__ = ["coord_check", "plan", "fit_exponents", "write_report"]
