#include "models/adc/adc.h"

namespace imcsim::kernels {

const char* adc_kind_name(AdcKind kind) {
  switch (kind) {
    case AdcKind::kIdeal: return "ideal";
    case AdcKind::kLinear: return "linear";
    case AdcKind::kNonlinear: return "nonlinear";
  }
  return "?";
}

const char* adc_rounding_name(AdcRounding rounding) {
  return rounding == AdcRounding::kFloor ? "floor" : "half_away";
}

const char* adc_granularity_name(AdcGranularity granularity) {
  switch (granularity) {
    case AdcGranularity::kLayer: return "layer";
    case AdcGranularity::kColumn: return "column";
    case AdcGranularity::kSliceTileColumn: return "slice_tile_column";
  }
  return "?";
}

}  // namespace imcsim::kernels
