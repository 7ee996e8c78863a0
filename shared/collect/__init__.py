"""Collection: a run works off its list of days (run.py); each day is one DayCollection (day.py) that cuts
the day into windows (windows.py, day_shape.py), reads Graph, archives every page, stores its rows and
records the outcome. replay.py rebuilds days from the archive without Graph."""
