"""Small-cell suppression: the vendor view of an evaluation result.

A vendor sees aggregates only, and no count below the policy's minimum (default 11), nor one
that could be derived from released numbers. `vendor_view` withholds:

- **Small groups.** A group (or the whole population) with fewer than the minimum cases, or
  patients, is `suppressed`: no counts, no metrics; every disparity and fairness gap it takes part
  in is suppressed too.
- **Small classes.** A population shown with fewer than the minimum positive (or negative)
  cases keeps its size but withholds its class counts, prevalence, every metric and its curves:
  every exact rate of such a population narrows or gives away the small count (a specificity of
  480/496 on 500 cases says that 4 are positive).
- **Complementary cells.** Counts add up: the groups of one table partition every case, an
  intersection's cells add up to the groups of each of its attributes, and empty cells are
  known zeros. A withheld count that is a linear combination of released ones (overall minus the
  other groups, a margin minus the other cells of its row...) is protected by withholding more:
  the smallest other group of the same table, until no withheld count is determined. The check is
  exact linear algebra over the cells of the finest cross-classification of the attributes (one
  set of cells per group of attributes that are intersected together): a withheld count is
  exposed when its cells' indicator lies in the span of the released populations' indicators.

- **Small withheld totals.** The withheld groups of a table hold, together, the overall minus the
  released groups; a total below the minimum pins them (two withheld groups of 2 cases hold one
  each), so the table's smallest released group is withheld too.
- **Narrow ranges of confusion counts.** A released population's class sizes and rates give its
  TP, FN, FP and TN exactly (sensitivity x positives = TP), so every confusion count of a
  withheld cell is bounded by sums and differences of released ones (overall's false negatives
  minus the released groups' are shared by the withheld ones; 0 shared is 0 each). The view
  then checks what a vendor could do: integer programs over non-negative integer TP, FN, FP, TN
  per cell and label, constrained by every released number, give the least and greatest value
  of each withheld count (cases, positives, negatives, TP, FN, FP, TN) and, by Dinkelbach's
  method, of each withheld sensitivity, specificity, PPV and NPV. Every range must be at least
  `MIN_COUNT_RANGE` (3) wide, and every rate's `MIN_RATE_RANGE` (0.1); where one is narrower,
  more is withheld (a complement's class counts, the group's own size, or overall's class
  counts), choosing among a few candidates the one that widens it at the least cost, then the
  checks above run again.

Not covered (see docs/fairness.md): rank and calibration metrics (AUROC, Brier, bins) of
released populations, bootstrap intervals, and a policy verdict's criteria that name groups in
ways other than their labels or gap notes.
"""

from __future__ import annotations

from validators.suppression.cells import MAX_CELLS
from validators.suppression.ranges import MIN_COUNT_RANGE, MIN_RATE_RANGE
from validators.suppression.view import committee_view, vendor_view

__all__ = ["MAX_CELLS", "MIN_COUNT_RANGE", "MIN_RATE_RANGE", "committee_view", "vendor_view"]
