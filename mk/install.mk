# Installation, removal and the source tarball (included by the Makefile).
#
#   make install     [PREFIX=/usr/local] [DESTDIR=] [LIBDIR=$(PREFIX)/lib, or
#                    $(PREFIX)/lib/<multiarch> when PREFIX is /usr]
#                    [INCLUDEDIR=$(PREFIX)/include] [BINDIR=$(PREFIX)/bin]
#                    [MANDIR=$(PREFIX)/share/man] [PKGCONFIGDIR=$(LIBDIR)/pkgconfig]
#   make uninstall   same variables; removes exactly what install put there
#   make dist        xalloc-$(VERSION).tar.gz of the committed sources, with
#                    the generated configure script
#
# Installed: libxalloc.so.$(VERSION) with the links libxalloc.so.$(SOVER) and
# libxalloc.so, libxalloc.a, xalloc.h, xalloc.pc, the xalloc wrapper, and
# the man pages xalloc(1), xalloc(3) (with xalloc_version(3), xalloc_purge(3),
# xalloc_ctl(3) and xalloc_stats_print(3) pointing to it), with the
# installed paths and the version written into the wrapper and the pages.
# ldconfig runs afterwards only where it matters: without DESTDIR, as root,
# and when LIBDIR is a directory the loader searches (LDCONFIG=true skips it).

# gcc -print-multiarch names Debian's per-architecture library directory.
MULTIARCH    = $(shell $(CC) -print-multiarch 2>/dev/null)
LIBDIR       ?= $(if $(and $(filter /usr,$(PREFIX)),$(MULTIARCH)),$(PREFIX)/lib/$(MULTIARCH),$(PREFIX)/lib)
INCLUDEDIR   ?= $(PREFIX)/include
BINDIR       ?= $(PREFIX)/bin
MANDIR       ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL      ?= install
LDCONFIG     ?= ldconfig
DISTNAME     := xalloc-$(VERSION)

# operator new throws std::bad_alloc through this file's frames.
build/obj/cxx_new.o: override CFLAGS += -fexceptions

# Paths in xalloc.pc relative to ${prefix} where they lie under it.
xa_pcpath = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
XA_MAN3_LINKS := xalloc_version xalloc_purge xalloc_ctl xalloc_stats_print
# The installed wrapper and man pages name the installed paths and version.
XA_SUBST = sed -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g'
# In the man pages a long path may break after any slash (\: in roff).
XA_SUBST_MAN = sed -e 's|@LIBDIR@|$(subst /,/\\:,$(LIBDIR))|g' -e 's|@INCLUDEDIR@|$(subst /,/\\:,$(INCLUDEDIR))|g' \
               -e 's|@VERSION@|$(VERSION)|g'

.PHONY: install uninstall dist

install: lib/libxalloc.so.$(VERSION) lib/libxalloc.a include/xalloc.h tools/xalloc.in man/xalloc.1 man/xalloc.3
	$(INSTALL) -d "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(PKGCONFIGDIR)" "$(DESTDIR)$(INCLUDEDIR)" \
	  "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(MANDIR)/man3"
	$(INSTALL) -m 644 lib/libxalloc.so.$(VERSION) "$(DESTDIR)$(LIBDIR)/libxalloc.so.$(VERSION)"
	ln -sf libxalloc.so.$(VERSION) "$(DESTDIR)$(LIBDIR)/libxalloc.so.$(SOVER)"
	ln -sf libxalloc.so.$(SOVER) "$(DESTDIR)$(LIBDIR)/libxalloc.so"
	$(INSTALL) -m 644 lib/libxalloc.a "$(DESTDIR)$(LIBDIR)/libxalloc.a"
	$(INSTALL) -m 644 include/xalloc.h "$(DESTDIR)$(INCLUDEDIR)/xalloc.h"
	@mkdir -p build
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(call xa_pcpath,$(LIBDIR))' \
	  'includedir=$(call xa_pcpath,$(INCLUDEDIR))' '' 'Name: xalloc' \
	  'Description: general-purpose malloc replacement (libc and pthreads only)' \
	  'Version: $(VERSION)' 'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lxalloc' \
	  'Libs.private: -pthread' >build/xalloc.pc
	$(INSTALL) -m 644 build/xalloc.pc "$(DESTDIR)$(PKGCONFIGDIR)/xalloc.pc"
	$(XA_SUBST) tools/xalloc.in >build/xalloc.sh
	$(INSTALL) -m 755 build/xalloc.sh "$(DESTDIR)$(BINDIR)/xalloc"
	for m in 1 3; do $(XA_SUBST_MAN) man/xalloc.$$m >build/xalloc.$$m || exit 1; \
	  $(INSTALL) -m 644 build/xalloc.$$m "$(DESTDIR)$(MANDIR)/man$$m/xalloc.$$m" || exit 1; done
	for f in $(XA_MAN3_LINKS); do echo '.so man3/xalloc.3' >"$(DESTDIR)$(MANDIR)/man3/$$f.3" || exit 1; done
	@if [ -n "$(DESTDIR)" ] || [ "$$(id -u)" != 0 ] || ! command -v $(LDCONFIG) >/dev/null 2>&1; then :; \
	elif $(LDCONFIG) -N -v 2>/dev/null | sed -n 's|^\(/[^:]*\):.*|\1|p' | grep -qxF "$(LIBDIR)"; then \
	  echo "$(LDCONFIG)"; $(LDCONFIG) || true; \
	else echo "note: $(LIBDIR) is not in the loader's search path: link with -Wl,-rpath,$(LIBDIR) or set LD_LIBRARY_PATH"; fi

uninstall:
	rm -f "$(DESTDIR)$(LIBDIR)/libxalloc.so.$(VERSION)" "$(DESTDIR)$(LIBDIR)/libxalloc.so.$(SOVER)" \
	  "$(DESTDIR)$(LIBDIR)/libxalloc.so" "$(DESTDIR)$(LIBDIR)/libxalloc.a" \
	  "$(DESTDIR)$(INCLUDEDIR)/xalloc.h" "$(DESTDIR)$(PKGCONFIGDIR)/xalloc.pc" \
	  "$(DESTDIR)$(BINDIR)/xalloc" "$(DESTDIR)$(MANDIR)/man1/xalloc.1" "$(DESTDIR)$(MANDIR)/man3/xalloc.3"
	for f in $(XA_MAN3_LINKS); do rm -f "$(DESTDIR)$(MANDIR)/man3/$$f.3"; done

# The committed tree (git archive of HEAD) plus the configure script that
# autoconf generates from configure.ac; outside a git checkout, the files
# of this directory less build outputs.  Uncommitted changes are not in the
# tarball: dist says so, and lists them, before it builds it.
DIST_STAGE := build/dist

dist:
	@rm -rf $(DIST_STAGE) build/$(DISTNAME).tar.gz; mkdir -p $(DIST_STAGE)
	@command -v autoconf >/dev/null 2>&1 || { echo "dist: autoconf is needed to ship configure (Debian: apt-get install autoconf)"; exit 1; }
	@if command -v git >/dev/null 2>&1 && [ "$$(git rev-parse --show-toplevel 2>/dev/null)" = "$(CURDIR)" ]; then \
	  dirty=$$(git status --porcelain --untracked-files=no); \
	  if [ -n "$$dirty" ]; then \
	    echo "dist: warning: the tarball holds HEAD; these uncommitted changes are left out:"; \
	    echo "$$dirty" | sed 's/^/dist:   /'; fi; \
	  echo "git archive --prefix=$(DISTNAME)/ HEAD"; \
	  git archive --format=tar --prefix=$(DISTNAME)/ HEAD | tar -xf - -C $(DIST_STAGE) || exit 1; \
	else \
	  echo "tar (no git checkout)"; \
	  tar -cf - --exclude=./build --exclude=./lib --exclude=./.git --exclude='./xalloc-*.tar.gz' \
	    --exclude=./bench/results --exclude=./bench/bin --exclude=./config.mk --exclude=./config.log \
	    --exclude=./config.status --exclude=./autom4te.cache --exclude='*.o' --exclude='*.so' --exclude='*.a' \
	    --transform 's|^\.|$(DISTNAME)|' . | tar -xf - -C $(DIST_STAGE) || exit 1; \
	fi
	cd $(DIST_STAGE)/$(DISTNAME) && autoconf && rm -rf autom4te.cache
	tar -C $(DIST_STAGE) --owner=0 --group=0 --numeric-owner --sort=name -cf - $(DISTNAME) | gzip -9n >$(DISTNAME).tar.gz
	@rm -rf $(DIST_STAGE)
	@echo "wrote $(DISTNAME).tar.gz"
