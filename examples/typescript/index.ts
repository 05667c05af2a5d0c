// A TypeScript program using this repository as a component package (docs/package.md):
//   pulumi package add https://github.com/<owner>/gpu-inference@v0.1.0   # generates sdks/gpu-inference
import * as pulumi from "@pulumi/pulumi";
import * as gpuinference from "@pulumi/gpu-inference";

const config = new pulumi.Config();

const llm = new gpuinference.InferenceStack("llm", {
    provider: "aws",  // a closed choice: the schema enum Provider
    region: "us-east-1",
    gpu: "g6e.xlarge",
    model: "Qwen/Qwen3-8B",
    nodeCount: 2,
    spot: true,
    monthlyBudgetUsd: 3500,
    allowedCidrs: ["203.0.113.0/24"],
    apiKey: config.requireSecret("apiKey"),
    monitoring: { scrapeIntervalSeconds: 15 },
});

export const endpoint = llm.endpoint;
export const kvCacheTokensPerNode = llm.kvCacheTokensPerNode;
