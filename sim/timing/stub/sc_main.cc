// libsystemc.so references sc_main. imcsim's programs have their own main() and drive
// SystemC directly (sim/timing/systemc_timing.cc), so this definition is never called.
#include <cstdio>

extern "C" int sc_main(int, char*[]) {  // declared extern "C" by <systemc>
  std::fputs("imcsim: sc_main is not an entry point of this program\n", stderr);
  return 1;
}
