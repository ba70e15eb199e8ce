"""Study files and the contract a study kind implements (kind.py); the kinds themselves live in
muscale/kinds/."""
