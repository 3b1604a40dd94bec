# Build and install p2p-broadcast: the three programs, their man pages,
# shell completions and the systemd units. See docs/systemd.md.
#
#   make                        # release build + man pages and completions
#   sudo make install           # into /usr/local
#   make install DESTDIR=/tmp/pkg PREFIX=/usr   # staged, for a package
#   sudo make uninstall
#
# `install` does not build (so `sudo make install` never runs cargo as
# root); run `make` first.

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man/man1
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
# Both are on systemd's search paths for PREFIX=/usr/local and /usr. For a
# per-user install (PREFIX=$(HOME)/.local) set
# USERUNITDIR=$(HOME)/.local/share/systemd/user.
USERUNITDIR ?= $(PREFIX)/lib/systemd/user
SYSTEMUNITDIR ?= $(PREFIX)/lib/systemd/system
# The commented example configs (p2p-server --config, p2pd.toml).
DOCDIR ?= $(PREFIX)/share/doc/p2p-broadcast

CARGO ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
RELEASE := $(TARGET_DIR)/release
# Man pages and completions, written by `cargo run -p xtask -- dist`.
DIST := $(TARGET_DIR)/dist
PROGRAMS := p2p-server p2pd p2pctl
USER_UNITS := p2pd.service p2pd.socket
SYSTEM_UNITS := p2p-server.service
# The units name the binaries by their default install path; installing
# elsewhere rewrites that path.
UNIT_BINDIR := /usr/local/bin

.PHONY: all build dist install uninstall

all: build

build: dist
	$(CARGO) build --release --locked -p p2p-server -p p2pd -p p2pctl

dist:
	rm -rf $(DIST)
	$(CARGO) run --release --locked --quiet -p xtask -- dist $(DIST) >/dev/null

install:
	@for p in $(PROGRAMS); do \
	  test -x $(RELEASE)/$$p || { echo "$(RELEASE)/$$p is missing: run 'make' first" >&2; exit 1; }; \
	done
	@test -d $(DIST)/man/man1 || { echo "$(DIST) is missing: run 'make' first" >&2; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR) $(DESTDIR)$(BASHCOMPDIR) \
	  $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) \
	  $(DESTDIR)$(USERUNITDIR) $(DESTDIR)$(SYSTEMUNITDIR) $(DESTDIR)$(DOCDIR)
	install -m 0644 packaging/p2p-server.toml.example packaging/p2pd.toml.example $(DESTDIR)$(DOCDIR)/
	install -m 0755 $(addprefix $(RELEASE)/,$(PROGRAMS)) $(DESTDIR)$(BINDIR)/
	install -m 0644 $(DIST)/man/man1/*.1 $(DESTDIR)$(MANDIR)/
	install -m 0644 $(addprefix $(DIST)/completions/bash/,$(PROGRAMS)) $(DESTDIR)$(BASHCOMPDIR)/
	install -m 0644 $(addprefix $(DIST)/completions/zsh/_,$(PROGRAMS)) $(DESTDIR)$(ZSHCOMPDIR)/
	install -m 0644 $(addsuffix .fish,$(addprefix $(DIST)/completions/fish/,$(PROGRAMS))) $(DESTDIR)$(FISHCOMPDIR)/
	for u in $(USER_UNITS); do \
	  sed 's|$(UNIT_BINDIR)/|$(BINDIR)/|g' packaging/systemd/$$u \
	    >$(DESTDIR)$(USERUNITDIR)/$$u && chmod 0644 $(DESTDIR)$(USERUNITDIR)/$$u || exit 1; \
	done
	for u in $(SYSTEM_UNITS); do \
	  sed 's|$(UNIT_BINDIR)/|$(BINDIR)/|g' packaging/systemd/$$u \
	    >$(DESTDIR)$(SYSTEMUNITDIR)/$$u && chmod 0644 $(DESTDIR)$(SYSTEMUNITDIR)/$$u || exit 1; \
	done
	@echo "installed; now: systemctl daemon-reload (system unit) and systemctl --user daemon-reload (user units)"

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(PROGRAMS))
	rm -f $(DESTDIR)$(MANDIR)/p2p-server.1 $(DESTDIR)$(MANDIR)/p2p-server-*.1 \
	  $(DESTDIR)$(MANDIR)/p2pd.1 $(DESTDIR)$(MANDIR)/p2pctl.1 $(DESTDIR)$(MANDIR)/p2pctl-*.1
	rm -f $(addprefix $(DESTDIR)$(BASHCOMPDIR)/,$(PROGRAMS)) \
	  $(addprefix $(DESTDIR)$(ZSHCOMPDIR)/_,$(PROGRAMS)) \
	  $(addsuffix .fish,$(addprefix $(DESTDIR)$(FISHCOMPDIR)/,$(PROGRAMS)))
	rm -f $(addprefix $(DESTDIR)$(USERUNITDIR)/,$(USER_UNITS))
	rm -f $(addprefix $(DESTDIR)$(SYSTEMUNITDIR)/,$(SYSTEM_UNITS))
	rm -f $(DESTDIR)$(DOCDIR)/p2p-server.toml.example $(DESTDIR)$(DOCDIR)/p2pd.toml.example
