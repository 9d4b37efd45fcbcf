# pushpark: build, install and package.
#
#   make                  release build of the library and the `pushpark` CLI (cargo)
#   make module           the Kamailio module (adapters/kamailio)
#   make opensips-module  the OpenSIPS module (adapters/opensips; builds OpenSIPS 3.6 from the
#                         vendored source into target/ once)
#   make install          staged install, e.g. DESTDIR=/tmp/root (used by the .deb and .rpm builds)
#   make deb              .deb packages in target/packages/
#   make rpm              .rpm packages in target/packages/
#   make lintian          lintian on the .debs (fails on errors)
#   make test-packages    root: build the .debs and .rpms, install, inspect, load, remove
#                         (tests/packaging/run)
#
# The package version is Cargo.toml's; the library's SONAME is set in build.rs.

VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n1)
SOVERSION := 1
SONAME := libpushpark.so.$(SOVERSION)
MULTIARCH := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)

PREFIX ?= /usr
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib/$(MULTIARCH)
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
SYSCONFDIR ?= /etc
STATEDIR ?= /var/lib
KAMAILIO_MODDIR ?= $(LIBDIR)/kamailio/modules
MODULE_DOCDIR ?= $(DATADIR)/doc/kamailio-pushpark-module
# Where OpenSIPS's own packages put modules (its debian/rules: LIBDIR=lib/<multiarch>; its
# RPM spec: %{_libdir}/opensips/modules).
OPENSIPS_MODDIR ?= $(LIBDIR)/opensips/modules
OPENSIPS_DOCDIR ?= $(DATADIR)/doc/opensips-pushpark-module

RELEASE := target/release
MODULE_DIR := adapters/kamailio
MODULE_SO := target/kamailio/pushpark.so
# The module package is built once the module's sources exist in the checkout.
WITH_MODULE ?= $(if $(wildcard $(MODULE_DIR)/Makefile),1)
OPENSIPS_DIR := adapters/opensips
OPENSIPS_SO := target/opensips/pushpark.so
# It needs the vendored OpenSIPS source (see adapters/opensips/README); WITH_OPENSIPS= leaves it out.
WITH_OPENSIPS ?= $(if $(wildcard $(OPENSIPS_DIR)/Makefile),1)
# The OpenSIPS release the module was built for, as the module itself states it to the core
# at load ("opensips 3.6.8 (x86_64/linux)"; OpenSIPS refuses any other release).
OPENSIPS_VERSION = $(shell strings $(OPENSIPS_SO) | sed -n 's/^opensips \([0-9.]*\) (.*)$$/\1/p' | head -n1)
PACKAGES := target/packages

.PHONY: all build module opensips-module install deb rpm lintian test-packages

all: build

# The command with the mock APNs, then the library without it (what hosts load): cargo
# unifies features within one build, so they are two.
build:
	cargo build --release --locked --features cli --bin pushpark
	cargo build --release --locked --lib

module: build
	$(MAKE) -C $(MODULE_DIR)

opensips-module: build
	$(MAKE) -C $(OPENSIPS_DIR)

# Installs what `build` (and `module`) produced; it does not build, so that the package tools
# (which run it under their own environment) never trigger a rebuild.
install:
	@test -f $(RELEASE)/libpushpark.so -a -f $(RELEASE)/pushpark || \
		{ echo "nothing built: run 'make build' first" >&2; exit 1; }
	@readelf -d $(RELEASE)/libpushpark.so | grep -q 'SONAME.*\[$(SONAME)\]' || \
		{ echo "$(RELEASE)/libpushpark.so: SONAME is not $(SONAME) (see build.rs)" >&2; exit 1; }
	install -D -m 0644 $(RELEASE)/libpushpark.so $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libpushpark.so
	install -D -m 0644 c-include/pushpark.h $(DESTDIR)$(INCLUDEDIR)/pushpark.h
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' packaging/pushpark.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/pushpark.pc
	install -D -m 0755 $(RELEASE)/pushpark $(DESTDIR)$(BINDIR)/pushpark
	install -D -m 0644 packaging/man/pushpark.1 $(DESTDIR)$(MANDIR)/man1/pushpark.1
ifneq ($(WITH_MODULE),)
	install -D -m 0644 $(MODULE_SO) $(DESTDIR)$(KAMAILIO_MODDIR)/pushpark.so
	install -D -m 0644 $(MODULE_DIR)/README $(DESTDIR)$(MODULE_DOCDIR)/README
	install -D -m 0644 $(MODULE_DIR)/examples/kamailio.cfg $(DESTDIR)$(MODULE_DOCDIR)/examples/kamailio.cfg
	# The APNs key goes next to the config: never world-readable (group set by the packages).
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/pushpark
	install -m 0640 packaging/pushpark.json $(DESTDIR)$(SYSCONFDIR)/pushpark/pushpark.json
	install -d -m 0750 $(DESTDIR)$(STATEDIR)/pushpark
endif
ifneq ($(WITH_OPENSIPS),)
	install -D -m 0644 $(OPENSIPS_SO) $(DESTDIR)$(OPENSIPS_MODDIR)/pushpark.so
	install -D -m 0644 $(OPENSIPS_DIR)/README $(DESTDIR)$(OPENSIPS_DOCDIR)/README
	# The example's mpath is this install's module directory (Debian's in the source).
	install -d $(DESTDIR)$(OPENSIPS_DOCDIR)/examples
	sed 's|^mpath=.*|mpath="$(OPENSIPS_MODDIR)/"|' $(OPENSIPS_DIR)/examples/opensips.cfg \
		>$(DESTDIR)$(OPENSIPS_DOCDIR)/examples/opensips.cfg
	# The engine's config beside OpenSIPS's own (the Kamailio module's package owns
	# /etc/pushpark; a server may have both) and a token store of its own (two engines
	# cannot share one). Never world-readable: the APNs key goes beside it.
	install -d $(DESTDIR)$(SYSCONFDIR)/opensips
	sed -e 's|"/etc/pushpark/|"$(SYSCONFDIR)/opensips/|' -e 's|"/var/lib/pushpark"|"$(STATEDIR)/opensips-pushpark"|' \
		packaging/pushpark.json >$(DESTDIR)$(SYSCONFDIR)/opensips/pushpark.json
	chmod 0640 $(DESTDIR)$(SYSCONFDIR)/opensips/pushpark.json
	install -d -m 0750 $(DESTDIR)$(STATEDIR)/opensips-pushpark
endif

DEB_SRC := target/deb/pushpark-$(VERSION)
DEB_REVISION ?= 1
# Reproducible: the changelog date is the last commit's.
DEB_DATE := $(shell git log -1 --format=%cD 2>/dev/null || date -R)
DEB_MAINTAINER := $(shell sed -n 's/^Maintainer: //p' packaging/debian/control)

# Build profiles leave out the module packages whose sources are not in the checkout.
DEB_PROFILES := $(strip $(if $(WITH_MODULE),,pkg.pushpark.nomodule) $(if $(WITH_OPENSIPS),,pkg.pushpark.noopensips))
comma := ,
empty :=
space := $(empty) $(empty)

deb: build $(if $(WITH_MODULE),module) $(if $(WITH_OPENSIPS),opensips-module)
	rm -rf target/deb
	mkdir -p $(DEB_SRC) $(PACKAGES)
	cp -r packaging/debian $(DEB_SRC)/debian
	printf 'pushpark (%s-%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- %s  %s\n' \
		'$(VERSION)' '$(DEB_REVISION)' "$$(git describe --always --dirty 2>/dev/null || echo a tarball)" \
		'$(DEB_MAINTAINER)' '$(DEB_DATE)' > $(DEB_SRC)/debian/changelog
	cd $(DEB_SRC) && PUSHPARK_TOP=$(CURDIR) PUSHPARK_OPENSIPS_VERSION=$(OPENSIPS_VERSION) \
		dpkg-buildpackage -b --no-sign $(if $(DEB_PROFILES),--build-profiles=$(subst $(space),$(comma),$(DEB_PROFILES)))
	rm -f $(PACKAGES)/*.deb
	cp target/deb/*.deb $(PACKAGES)/

lintian:
	lintian --fail-on error --info $(PACKAGES)/*.deb

KAMAILIO_VERSION = $(shell kamailio -v | sed -n 's/^version: kamailio \([0-9.]*\).*/\1/p')

rpm: build $(if $(WITH_MODULE),module) $(if $(WITH_OPENSIPS),opensips-module)
	rm -rf target/rpm $(PACKAGES)/*.rpm
	mkdir -p $(PACKAGES)
	# --nodeps: the BuildRequires name RPM packages, and Debian's rpm database is empty.
	rpmbuild -bb --nodeps packaging/rpm/pushpark.spec \
		--define '_topdir $(CURDIR)/target/rpm' \
		--define 'pushpark_top $(CURDIR)' \
		--define 'pushpark_version $(VERSION)' \
		$(if $(WITH_MODULE),--with module --define 'kamailio_version $(KAMAILIO_VERSION)',--without module) \
		$(if $(WITH_OPENSIPS),--with opensips --define 'opensips_version $(OPENSIPS_VERSION)',--without opensips)
	cp target/rpm/RPMS/*/*.rpm $(PACKAGES)/

test-packages:
	tests/packaging/run
