// Contention on the chip's shared resources, against hand-derived cycles: two pipelined
// layers A -> B stream 2 images; A writes its output to the global buffer while B reads its
// input (image 0) from it. Three independent chips in one simulation:
//   link:   both transfers need the one bus link;   ports:   both need the one global buffer port;
//   2 ports: no contention, the closed form is exact.
// The stall counters account for the difference exactly. Own executable (one SystemC elaboration).
#include <gtest/gtest.h>

#include <memory>
#include <systemc>

#include "models/tile/layer_pipeline.h"

using namespace imcsim::timing;

namespace {

// A: 1 position, 1 group, read 1, convert 1, output delivery 3 cycles (link or port).
// B: input delivery 3 cycles, read 1, convert 1. Closed form: 5 cycles each.
PipelineJob job_a(bool via_link) {
  PipelineJob j;
  j.name = "A";
  j.is_imc = true;
  j.imc = {1, 1, 1, 1, 0, 0};
  if (via_link) {
    j.imc.link_out_cycles = 3;
    j.link_path_out = {0};
  } else {
    j.imc.gb_write_cycles = 3;
  }
  return j;
}
PipelineJob job_b(bool via_link) {
  PipelineJob j;
  j.name = "B";
  j.is_imc = true;
  j.imc = {1, 1, 1, 1, 0, 0};
  if (via_link) {
    j.imc.link_in_cycles = 3;
    j.link_path_in = {0};
  } else {
    j.imc.gb_read_cycles = 3;
  }
  return j;
}

struct Chip {
  std::unique_ptr<ChipFabric> fabric;
  std::unique_ptr<LayerPipeline> a, b;
  Chip(const char* name, bool via_link, uint32_t ports) {
    fabric = std::make_unique<ChipFabric>(ports, std::vector<std::string>{"bus"});
    a = std::make_unique<LayerPipeline>((std::string(name) + "_A").c_str(), std::vector<PipelineJob>(2, job_a(via_link)),
                                        TraceOptions{}, fabric.get());
    b = std::make_unique<LayerPipeline>((std::string(name) + "_B").c_str(), std::vector<PipelineJob>(2, job_b(via_link)),
                                        TraceOptions{}, fabric.get());
    b->set_upstream(a.get());
  }
};

}  // namespace

TEST(Contention, SharedLinkAndGlobalBufferPortStallThePipeline) {
  ASSERT_EQ(analytical_layer_cycles(job_a(true).imc), 5u);
  ASSERT_EQ(analytical_layer_cycles(job_b(true).imc), 5u);
  ::setenv("SC_COPYRIGHT_MESSAGE", "DISABLE", 0);
  Chip link("link", true, 2), port("port", false, 1), free_chip("free", false, 2);
  sc_core::sc_start();
  for (Chip* c : {&link, &port, &free_chip}) ASSERT_TRUE(c->a->finished() && c->b->finished());

  // Contended (link, and 1 port alike). A image 0: read [0,1] conv [1,2] out [2,5]. At 5 A
  // starts image 1 and B starts image 0; B's input takes the resource [5,8]; A's image 1 is
  // converted at 7 and its output waits 1 cycle: [8,11]. B image 0: read [8,9] conv [9,10]
  // -> ends 10. B image 1 starts at 11 (A's image 1 done): in [11,14], read, conv -> 16.
  for (Chip* c : {&link, &port}) {
    const auto& ra = c->a->results();
    const auto& rb = c->b->results();
    EXPECT_EQ(ra[0].end_cycle, 5u);
    EXPECT_EQ(ra[1].start_cycle, 5u);
    EXPECT_EQ(ra[1].end_cycle, 11u);
    EXPECT_EQ(rb[0].start_cycle, 5u);
    EXPECT_EQ(rb[0].end_cycle, 10u);
    EXPECT_EQ(rb[1].start_cycle, 11u);
    EXPECT_EQ(rb[1].end_cycle, 16u);
  }
  // Closed form of the stream: latency 5 + 5, interval max(5, 5): 10 + 5 = 15. The SystemC
  // model takes 16; the one extra cycle is A's output waiting for the shared resource.
  EXPECT_EQ(link.a->results()[1].stats.write_stall_link, 1u);
  EXPECT_EQ(link.b->results()[0].stats.fetch_stall_link, 0u);
  EXPECT_EQ(port.a->results()[1].stats.write_stall_gb, 1u);
  EXPECT_EQ(port.b->results()[0].stats.fetch_stall_gb, 0u);
  EXPECT_EQ(link.b->results()[1].end_cycle - 15, link.a->results()[1].stats.write_stall_link);
  EXPECT_EQ(link.fabric->link_busy_cycles()[0], 4u * 3) << "2 writes + 2 reads of 3 cycles";
  EXPECT_EQ(port.fabric->global_buffer_port_busy_cycles(), 4u * 3);

  // Two ports: A image 1's write [7,10] overlaps B's read [5,8]; B image 1 starts at 10 and
  // ends 15 = the closed form.
  const auto& fa = free_chip.a->results();
  const auto& fb = free_chip.b->results();
  EXPECT_EQ(fa[1].end_cycle, 10u);
  EXPECT_EQ(fb[0].end_cycle, 10u);
  EXPECT_EQ(fb[1].end_cycle, 15u);
  EXPECT_EQ(fa[1].stats.write_stall_gb + fb[0].stats.fetch_stall_gb + fb[1].stats.fetch_stall_gb, 0u);
}
