# Fails if any numeric kernel (models/, except the SystemC tile models in models/tile/ and
# their SystemC-free timing functions) or the functional engine includes SystemC.
# Run by CTest: cmake -DSOURCE_DIR=<repo> -P kernels_free_of_systemc.cmake
file(GLOB_RECURSE files ${SOURCE_DIR}/models/*.h ${SOURCE_DIR}/models/*.cc
     ${SOURCE_DIR}/sim/engine/*.h ${SOURCE_DIR}/sim/engine/*.cc ${SOURCE_DIR}/sim/mapping/*.h
     ${SOURCE_DIR}/sim/mapping/*.cc)
list(FILTER files EXCLUDE REGEX "/models/tile/layer_pipeline")
set(offenders "")
foreach(f ${files})
  file(STRINGS ${f} hits REGEX "#[ \t]*include[ \t]*[<\"](systemc|systemc\\.h|tlm|tlm\\.h)[>\"]")
  if(hits)
    list(APPEND offenders ${f})
  endif()
endforeach()
if(offenders)
  message(FATAL_ERROR "numeric kernels must not include SystemC: ${offenders}")
endif()
list(LENGTH files n)
message(STATUS "checked ${n} kernel/engine files: none includes SystemC")
