/* The multi-architecture sample: a program each CodeBuild host compiles for itself. */
#include <stdio.h>
#include <sys/utsname.h>

int main(void) {
    struct utsname host;
    if (uname(&host) != 0) {
        perror("uname");
        return 1;
    }
    printf("hello from %s\n", host.machine);
    return 0;
}
