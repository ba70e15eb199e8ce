"""Plain data that determines a run: the run spec, the mode and horizon tables, and the option table
the command line, the study files and `plan` are made from. Imports nothing else of muscale."""
