/*
 * Built by tests/packaging/run from outside the source tree, with only
 * `pkg-config --cflags --libs pushpark` against the installed libpushpark-dev, and run
 * against the installed libpushpark1: the header and the loaded library must agree, and the
 * library must judge configurations. Usage: client [CONFIG.json]; with a file, that
 * configuration (e.g. the shipped /etc/pushpark/pushpark.json) must be valid.
 */
#include <pushpark.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

int main(int argc, char **argv) {
    if (strcmp(pushpark_version(), PUSHPARK_VERSION_STRING) != 0) {
        fprintf(stderr, "header says %s, library says %s\n", PUSHPARK_VERSION_STRING,
                pushpark_version());
        return 1;
    }
    pushpark_result rc = pushpark_config_check("{\"apns\": {}}");
    if (rc != PUSHPARK_ERR_CONFIG || strstr(pushpark_last_error(), "apns.auth") == NULL) {
        fprintf(stderr, "a config without apns.auth: got %s (%s)\n", pushpark_result_name(rc),
                pushpark_last_error());
        return 1;
    }
    printf("libpushpark %s: a config without apns.auth is refused: %s\n", pushpark_version(),
           pushpark_last_error());
    if (argc > 1) {
        const char *json = read_file(argv[1]);
        if (!json)
            return 1;
        rc = pushpark_config_check(json);
        if (rc != PUSHPARK_OK) {
            fprintf(stderr, "%s: %s: %s\n", argv[1], pushpark_result_name(rc),
                    pushpark_last_error());
            return 1;
        }
        printf("%s: valid\n", argv[1]);
    }
    return EXIT_SUCCESS;
}
