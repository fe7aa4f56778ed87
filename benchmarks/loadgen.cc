// benchmarks/loadgen.py in C++: the same command line, the same JSON line, a third of the CPU.
//
// Why a second generator: on this project's 2-core machine the Python generator (grpc.aio,
// 160-190 us of CPU a call at 2,200-3,000 calls/s) takes half a core at 3x overload and twice
// what it takes during the capacity run that goodput is divided by, so the server under test
// loses cores to its own client (benchmarks/README.md, "Overload on a fast model"). Clients of
// a serving platform run on other machines; this one costs what gRPC's C++ library costs
// (61-71 us a call at the same rates, most of it in gRPC's own threads).
// No protobuf here: the request is the same pre-serialized file, the reply is not parsed
// (grpc::GenericStub, bytes in, bytes out).
//
// One thread drives a completion queue: it sends each call at its Poisson time (or, closed
// loop, a new call as each one ends) and waits for completions in between.
//
//     g++ -O2 -std=c++17 benchmarks/loadgen.cc $(pkg-config --cflags --libs grpc++) -o loadgen
//     loadgen ADDRESS REQUEST_FILE (--rate R | --concurrency C) [--timeout-ms T] [--duration S]
//             [--seed N] [--start-at EPOCH_S] [--warmup N]
//
// Debian: libgrpc++-dev. benchmarks/admission.py --generator cc builds it into .cache/.

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
// A std::string that outlives every call: the stub keeps a pointer to its characters, not a copy.
const std::string kMethod = "/inference.GRPCInferenceService/ModelInfer";

struct Args {
    std::string address, request;
    double rate = 0, duration = 5, timeout_ms = 0, start_at = 0;
    int concurrency = 4, warmup = 5;
    unsigned long seed = 0;
};

// One call in flight; its address is the completion queue's tag.
struct Call {
    grpc::ClientContext context;
    grpc::ByteBuffer reply;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<grpc::ByteBuffer>> reader;
    Clock::time_point due;  // open loop: its Poisson time; closed loop: when it was sent
};

const char* code_name(grpc::StatusCode code) {
    static const char* const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
        "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
    int i = static_cast<int>(code);
    return i >= 0 && i < 17 ? names[i] : "UNKNOWN";
}

// The status and the first words of its message, as loadgen.py's _kind: which stage refused it.
std::string kind(const grpc::Status& status) {
    std::istringstream words(status.error_message());
    std::string word, out = code_name(status.error_code());
    out += ":";
    for (int i = 0; i < 4 && words >> word; ++i) out += " " + word;
    return out;
}

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\', out += c;
        else if (static_cast<unsigned char>(c) < 0x20) out += ' ';
        else out += c;
    }
    return out + "\"";
}

double process_cpu_s() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

class Generator {
  public:
    Generator(const Args& args, const std::string& payload)
        : args_(args),
          stub_(grpc::CreateChannel(args.address, grpc::InsecureChannelCredentials())) {
        grpc::Slice slice(payload);
        payload_ = grpc::ByteBuffer(&slice, 1);
    }

    ~Generator() {  // a completion queue must be shut down and drained before it is destroyed
        cq_.Shutdown();
        void* tag;
        bool ok;
        while (cq_.Next(&tag, &ok)) delete static_cast<Call*>(tag);
    }

    void warm_up() {
        for (int i = 0; i < args_.warmup; ++i) {
            send(Clock::now(), /*deadline=*/false);
            void* tag;
            bool ok;
            cq_.Next(&tag, &ok);
            std::unique_ptr<Call> call(static_cast<Call*>(tag));
            --in_flight_;
            if (!call->status.ok()) {
                std::fprintf(stderr, "loadgen: warm-up call failed: %s\n", kind(call->status).c_str());
                std::exit(1);
            }
        }
    }

    // Poisson arrivals at args_.rate for args_.duration s; latency from each call's scheduled time.
    void open_loop() {
        std::mt19937_64 rng(args_.seed);
        std::exponential_distribution<double> gap(args_.rate);
        std::vector<double> offsets;
        for (double t = gap(rng); t <= args_.duration; t += gap(rng)) offsets.push_back(t);
        lags_.reserve(offsets.size());
        latencies_.reserve(offsets.size());
        start_ = Clock::now();
        size_t next = 0;
        while (next < offsets.size() || in_flight_ > 0) {
            if (next < offsets.size()) {
                auto due = start_ + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(offsets[next]));
                auto now = Clock::now();
                if (now >= due) {
                    lags_.push_back(seconds(now - due));
                    send(due, true);
                    ++next;
                    continue;
                }
                // AsyncNext takes a system_clock deadline: the same instant, on that clock.
                auto wake = std::chrono::system_clock::now() +
                            std::chrono::duration_cast<std::chrono::system_clock::duration>(due - now);
                void* tag;
                bool ok;
                if (cq_.AsyncNext(&tag, &ok, wake) == grpc::CompletionQueue::GOT_EVENT) finish(tag);
            } else {
                void* tag;
                bool ok;
                cq_.Next(&tag, &ok);
                finish(tag);
            }
        }
        sent_ = offsets.size();
        wall_s_ = seconds(Clock::now() - start_);
    }

    // args_.concurrency callers back to back; latency from each call's send.
    void closed_loop() {
        start_ = Clock::now();
        auto stop_at = start_ + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(args_.duration));
        for (int i = 0; i < args_.concurrency; ++i) send(Clock::now(), true), ++sent_;
        while (in_flight_ > 0) {
            void* tag;
            bool ok;
            cq_.Next(&tag, &ok);
            finish(tag);
            if (Clock::now() < stop_at) send(Clock::now(), true), ++sent_;
        }
        wall_s_ = seconds(Clock::now() - start_);
    }

    void print(double cpu_s) const {
        std::vector<double> lags = lags_;
        double lag_p99_ms = 0;
        if (!lags.empty()) {  // numpy's default (linear) percentile
            std::sort(lags.begin(), lags.end());
            double rank = 0.99 * (lags.size() - 1);
            size_t lo = static_cast<size_t>(rank);
            size_t hi = std::min(lo + 1, lags.size() - 1);
            lag_p99_ms = (lags[lo] + (rank - lo) * (lags[hi] - lags[lo])) * 1e3;
        }
        std::printf("{\"latencies_s\": [");
        for (size_t i = 0; i < latencies_.size(); ++i) std::printf(i ? ", %.9g" : "%.9g", latencies_[i]);
        std::printf("], \"errors\": {");
        bool first = true;
        for (const auto& [k, n] : errors_) {
            std::printf("%s%s: %ld", first ? "" : ", ", json_string(k).c_str(), n);
            first = false;
        }
        std::printf("}, \"wall_s\": %.9g, \"sent\": %zu, \"lag_p99_ms\": %.9g, \"cpu_s\": %.9g}\n", wall_s_, sent_,
                    lag_p99_ms, cpu_s);
        std::fflush(stdout);
    }

  private:
    void send(Clock::time_point due, bool deadline) {
        auto* call = new Call;
        call->due = due;
        if (deadline && args_.timeout_ms > 0)
            call->context.set_deadline(std::chrono::system_clock::now() +
                                       std::chrono::microseconds(static_cast<long>(args_.timeout_ms * 1e3)));
        call->reader = stub_.PrepareUnaryCall(&call->context, kMethod, payload_, &cq_);
        call->reader->StartCall();
        call->reader->Finish(&call->reply, &call->status, call);
        ++in_flight_;
    }

    void finish(void* tag) {
        std::unique_ptr<Call> call(static_cast<Call*>(tag));
        --in_flight_;
        if (call->status.ok()) latencies_.push_back(seconds(Clock::now() - call->due));
        else ++errors_[kind(call->status)];
    }

    const Args& args_;
    grpc::GenericStub stub_;
    grpc::CompletionQueue cq_;
    grpc::ByteBuffer payload_;
    Clock::time_point start_;
    long in_flight_ = 0;
    size_t sent_ = 0;
    double wall_s_ = 0;
    std::vector<double> latencies_, lags_;
    std::map<std::string, long> errors_;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "loadgen: %s\nusage: loadgen ADDRESS REQUEST_FILE (--rate R | --concurrency C) [--timeout-ms T] "
                 "[--duration S] [--seed N] [--start-at EPOCH_S] [--warmup N]\n",
                 why);
    std::exit(2);
}

Args parse(int argc, char** argv) {
    Args args;
    std::vector<std::string> positional;
    for (int i = 1; i < argc; ++i) {
        std::string flag = argv[i];
        if (flag.rfind("--", 0) != 0) {
            positional.push_back(flag);
            continue;
        }
        if (i + 1 >= argc) usage(("no value for " + flag).c_str());
        char* end;
        double value = std::strtod(argv[++i], &end);
        if (*end) usage((flag + " takes a number, got " + argv[i]).c_str());
        if (flag == "--rate") args.rate = value;
        else if (flag == "--concurrency") args.concurrency = static_cast<int>(value);
        else if (flag == "--duration") args.duration = value;
        else if (flag == "--timeout-ms") args.timeout_ms = value;
        else if (flag == "--seed") args.seed = static_cast<unsigned long>(value);
        else if (flag == "--start-at") args.start_at = value;
        else if (flag == "--warmup") args.warmup = static_cast<int>(value);
        else usage(("unknown option " + flag).c_str());
    }
    if (positional.size() != 2) usage("expected ADDRESS and REQUEST_FILE");
    args.address = positional[0];
    args.request = positional[1];
    if (args.rate < 0 || args.concurrency < 1 || args.duration <= 0) usage("rate, concurrency and duration must be positive");
    return args;
}

}  // namespace

int main(int argc, char** argv) {
    Args args = parse(argc, argv);
    std::ifstream file(args.request, std::ios::binary);
    if (!file) usage(("cannot read " + args.request).c_str());
    std::string payload((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    Generator generator(args, payload);
    generator.warm_up();
    auto start_at = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(args.start_at)));
    std::this_thread::sleep_until(start_at);
    double cpu0 = process_cpu_s();
    if (args.rate > 0) generator.open_loop();
    else generator.closed_loop();
    generator.print(process_cpu_s() - cpu0);
    return 0;
}
