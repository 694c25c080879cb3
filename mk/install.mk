# Installation, removal and the source tarball (included by the Makefile).
#
#   make install     [PREFIX=/usr/local] [DESTDIR=] [LIBDIR=$(PREFIX)/lib]
#                    [INCLUDEDIR=$(PREFIX)/include] [BINDIR=$(PREFIX)/bin]
#                    [MANDIR=$(PREFIX)/share/man] [PKGCONFIGDIR=$(LIBDIR)/pkgconfig]
#   make uninstall   same variables; removes exactly what install put there
#   make dist        xalloc-$(VERSION).tar.gz of the committed sources
#
# Installed: libxalloc.so.$(VERSION) with the links libxalloc.so.$(SOVER) and
# libxalloc.so, libxalloc.a, xalloc.h, xalloc.pc, the xalloc wrapper, and
# the man pages xalloc(1), xalloc(3) (with xalloc_version(3), xalloc_purge(3),
# xalloc_ctl(3) and xalloc_stats_print(3) pointing to it).  Without
# DESTDIR, as root, ldconfig runs afterwards (LDCONFIG=true skips it).

LIBDIR       ?= $(PREFIX)/lib
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
	sed -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@VERSION@|$(VERSION)|g' tools/xalloc.in >build/xalloc.sh
	$(INSTALL) -m 755 build/xalloc.sh "$(DESTDIR)$(BINDIR)/xalloc"
	$(INSTALL) -m 644 man/xalloc.1 "$(DESTDIR)$(MANDIR)/man1/xalloc.1"
	$(INSTALL) -m 644 man/xalloc.3 "$(DESTDIR)$(MANDIR)/man3/xalloc.3"
	for f in $(XA_MAN3_LINKS); do echo '.so man3/xalloc.3' >"$(DESTDIR)$(MANDIR)/man3/$$f.3" || exit 1; done
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v $(LDCONFIG) >/dev/null 2>&1; then \
	  echo "$(LDCONFIG)"; $(LDCONFIG) || true; fi

uninstall:
	rm -f "$(DESTDIR)$(LIBDIR)/libxalloc.so.$(VERSION)" "$(DESTDIR)$(LIBDIR)/libxalloc.so.$(SOVER)" \
	  "$(DESTDIR)$(LIBDIR)/libxalloc.so" "$(DESTDIR)$(LIBDIR)/libxalloc.a" \
	  "$(DESTDIR)$(INCLUDEDIR)/xalloc.h" "$(DESTDIR)$(PKGCONFIGDIR)/xalloc.pc" \
	  "$(DESTDIR)$(BINDIR)/xalloc" "$(DESTDIR)$(MANDIR)/man1/xalloc.1" "$(DESTDIR)$(MANDIR)/man3/xalloc.3"
	for f in $(XA_MAN3_LINKS); do rm -f "$(DESTDIR)$(MANDIR)/man3/$$f.3"; done

# The committed tree (git archive of HEAD); outside a git checkout, the
# files of this directory less build outputs.
dist:
	@mkdir -p build; rm -f build/$(DISTNAME).tar.gz
	@if command -v git >/dev/null 2>&1 && [ "$$(git rev-parse --show-toplevel 2>/dev/null)" = "$(CURDIR)" ]; then \
	  echo "git archive --prefix=$(DISTNAME)/ HEAD"; \
	  git archive --format=tar --prefix=$(DISTNAME)/ HEAD | gzip -9n >build/$(DISTNAME).tar.gz || exit 1; \
	  if [ -n "$$(git status --porcelain --untracked-files=no)" ]; then \
	    echo "dist: note: uncommitted changes are not in the tarball"; fi; \
	else \
	  echo "tar (no git checkout)"; \
	  tar -cf - --exclude=./build --exclude=./lib --exclude=./.git --exclude='./xalloc-*.tar.gz' \
	    --exclude=./bench/results --exclude=./bench/bin --exclude=./config.mk --exclude=./config.log \
	    --exclude=./config.status --exclude=./autom4te.cache --exclude='*.o' --exclude='*.so' --exclude='*.a' \
	    --transform 's|^\.|$(DISTNAME)|' . | gzip -9n >build/$(DISTNAME).tar.gz || exit 1; \
	fi
	mv build/$(DISTNAME).tar.gz $(DISTNAME).tar.gz
	@echo "wrote $(DISTNAME).tar.gz"
