// Subcommands of the imcsim CLI that live in their own source files (sim/app/*.cc); main.cc
// dispatches to them. Each takes the arguments after the command name and returns the exit code
// (0 success, 2 bad command line); bad inputs throw, and main prints 'imcsim: error: ...' and
// exits 1.
#pragma once

#include <string>
#include <vector>

// imcsim calibrate: fit ADC references to the partial sums of calibration images, write a new
// graph (docs/calibration.md).
int cmd_calibrate(const std::vector<std::string>& args);
// imcsim sweep: runs a design-space sweep, one `imcsim run` process per point (docs/sweep.md).
int cmd_sweep(const std::vector<std::string>& args);
// imcsim sweep-merge: joins the shards of a sweep into sweep.csv / sweep.json.
int cmd_sweep_merge(const std::vector<std::string>& args);
