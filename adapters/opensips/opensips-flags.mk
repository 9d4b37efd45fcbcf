# Writes to $(OUT_FILE), as make assignments, the flags OpenSIPS's own build gives a module
# (run with -C in the OpenSIPS tree; see Makefile). It repeats the top Makefile's prelude,
# so DEFS (hence the compile-flags string OpenSIPS checks at load) are the ones `make app`
# used. $(file) keeps their quotes as they are.
makefile_defs=0
DEFS:= $(DEFS_EXTRA_OPTS)
include Makefile.conf
include Makefile.defs

print:
	$(file >$(OUT_FILE),OS_DEFS := $(DEFS))
	$(file >>$(OUT_FILE),OS_CFLAGS := $(MOD_CFLAGS))
	$(file >>$(OUT_FILE),OS_LDFLAGS := $(MOD_LDFLAGS))
	@:
