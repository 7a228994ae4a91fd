/* The capture floor: what a runner that keeps each job's output must do at least.
 * Runs `PROG <i>` N times, SLOTS at a time: posix_spawn with two pipes (stdout, stderr), poll
 * every pipe until EOF, then wait4 for the job's rusage. No other bookkeeping.
 * Build: cc -O2 -o capture_floor capture_floor.c    Run: ./capture_floor 3000 2 /usr/bin/true
 * A program name without a slash is searched on PATH for every job, as a runner would. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct job { pid_t pid; int out, err; };

static int spawn(struct job *j, const char *prog, long seq) {
    int o[2], e[2];
    if (pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC)) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, o[1], 1);
    posix_spawn_file_actions_adddup2(&fa, e[1], 2);
    char num[32];
    snprintf(num, sizeof num, "%ld", seq);
    char *args[] = {(char *)prog, num, NULL};
    int rc = strchr(prog, '/') ? posix_spawn(&j->pid, prog, &fa, NULL, args, environ)
                               : posix_spawnp(&j->pid, prog, &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(o[1]);
    close(e[1]);
    j->out = o[0];
    j->err = e[0];
    return rc;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 3000;
    long slots = argc > 2 ? atol(argv[2]) : 2;
    const char *prog = argc > 3 ? argv[3] : "true";
    struct job *jobs = calloc(slots, sizeof *jobs);
    struct pollfd *fds = calloc(2 * slots, sizeof *fds);
    long started = 0, done = 0;
    char buf[65536];
    for (long s = 0; s < slots; s++) jobs[s].pid = 0;
    while (done < n) {
        for (long s = 0; s < slots && started < n; s++) {
            if (jobs[s].pid == 0) {
                if (spawn(&jobs[s], prog, ++started)) { perror("spawn"); return 1; }
            }
        }
        long nfds = 0;
        for (long s = 0; s < slots; s++) {
            if (jobs[s].pid == 0) continue;
            if (jobs[s].out >= 0) fds[nfds++] = (struct pollfd){jobs[s].out, POLLIN, 0};
            if (jobs[s].err >= 0) fds[nfds++] = (struct pollfd){jobs[s].err, POLLIN, 0};
        }
        if (nfds > 0 && poll(fds, nfds, -1) < 0) { perror("poll"); return 1; }
        for (long i = 0; i < nfds; i++) {
            if (!fds[i].revents) continue;
            if (read(fds[i].fd, buf, sizeof buf) > 0) continue;
            for (long s = 0; s < slots; s++) {
                if (jobs[s].out == fds[i].fd) { close(jobs[s].out); jobs[s].out = -1; }
                if (jobs[s].err == fds[i].fd) { close(jobs[s].err); jobs[s].err = -1; }
            }
        }
        for (long s = 0; s < slots; s++) {
            if (jobs[s].pid && jobs[s].out < 0 && jobs[s].err < 0) {
                int status;
                struct rusage ru;
                if (wait4(jobs[s].pid, &status, 0, &ru) < 0) { perror("wait4"); return 1; }
                jobs[s].pid = 0;
                done++;
            }
        }
    }
    return 0;
}
