"""Pages for people: the committee's dashboards, and the terminal scorecard (`scorecard`)."""
