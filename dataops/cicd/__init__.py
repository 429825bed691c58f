"""CI/CD: a disposable environment per pull request, slim builds against prod, a data diff.

- ``environments``: where things live (CI and prod warehouse files, prod state, per-PR folders)
  and the PR schemas themselves (create, list, drop);
- ``pr``: ``dataops pr build`` (state:modified+ deferred to prod) and ``pr teardown``;
- ``diff`` and ``report``: the data diff against prod and the Markdown report of a PR build;
- ``janitor``: drops PR environments that are too old or whose pull request is closed;
- ``deploy``: builds prod and publishes the manifest PR builds defer to;
- ``github``: the few GitHub REST calls (one PR comment, the list of open PRs);
- ``commands``: the ``dataops`` subcommands.
"""
