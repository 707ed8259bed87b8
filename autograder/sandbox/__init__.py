"""Running student code: the bubblewrap launcher, seccomp, the fork server, the student session."""
