# What every host's module Makefile shares, included after it set ROOT, TARGET, OUT (the
# objects' directory), MODULE, HOST_CFLAGS (its defines and flags), HOST_INCLUDES and
# HOST_DEPS (what objects wait for: the host's configured tree). It compiles the
# adapter's sources and those of ../common (the host-independent half, see pp_host.h)
# into $(OUT), and builds libpushpark with cargo unless RUSTLIB=... names a library built
# already (the e2e tests, which run under cargo). The host's Makefile links $(MODULE)
# with PP_LINK.

COMMON    := ../common
vpath %.c $(COMMON)
SRCS      := $(wildcard *.c) $(notdir $(wildcard $(COMMON)/*.c))
PUSHPARK_INCLUDE ?= $(ROOT)/c-include
HDRS      := $(wildcard *.h) $(wildcard $(COMMON)/*.h) $(PUSHPARK_INCLUDE)/pushpark.h
OBJS      := $(patsubst %.c,$(OUT)/%.o,$(SRCS))
# The Rust staticlib's system dependencies (rustc --print native-static-libs).
RUST_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

all: $(MODULE)

$(OUT)/%.o: %.c $(HDRS) $(HOST_DEPS) | $(OUT)
	@echo "CC $<"
	@$(CC) $(HOST_CFLAGS) -DMOD_NAME=$(MOD_NAME_DEF) $(HOST_INCLUDES) -I$(PUSHPARK_INCLUDE) \
		-I. -I$(COMMON) -c $< -o $@

$(OUT):
	mkdir -p $@

ifeq ($(RUSTLIB),)
RUSTLIB := $(TARGET)/release/libpushpark.a
$(RUSTLIB): FORCE
	cd $(ROOT) && cargo build --release --lib
endif

# Only what the host's module loader looks up is exported (pushpark.map); the Rust
# library stays private.
PP_LINK = $(CC) $(HOST_LDFLAGS) -Wl,--version-script=pushpark.map -Wl,--gc-sections \
	-o $@.tmp $(OBJS) $(RUSTLIB) $(RUST_LIBS)

clean:
	rm -rf $(OUT)

.PHONY: all check clean FORCE
