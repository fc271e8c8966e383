package org.xlnetedge.app

import org.xlnetedge.tokenizer.Encoded
import org.xlnetedge.tokenizer.MiniJson
import org.xlnetedge.tokenizer.XLNetTokenizer
import java.math.BigDecimal
import java.math.MathContext

// The app's startup self-test over the bundle's selftest.json (written by the export: toolkit/selftest.py). Pure
// Kotlin, like Bundle.kt: tests/test_sample_apps.py runs it on the JVM (SelfTestMain.kt) with the host runtimes'
// logits standing in for LiteRT/ExecuTorch on the phone. MainActivity runs it with the real classifiers.

/**
 * One golden text with the ids the export host's tokenizer gave it, at the length bucket an app must run it in
 * ([sequenceLength]: the shortest that holds it, as XLNetTokenizer.encodeBucketed picks it).
 */
class GoldenExample(
    val text: String,
    val pair: String?,
    val inputIds: IntArray,
    val attentionMask: IntArray,
    val tokenTypeIds: IntArray,
    val sequenceLength: Int = inputIds.size
)

/** One artifact's expected logits (the host run of its runtime) and the tolerance the device must meet. */
class GoldenOutputs(
    val sha256: String,
    val runtime: String,
    val atol: Double,
    val tolerance: String,   // how atol was derived, e.g. "float model: max |logit diff| <= 0.0001 (...)"
    val logits: List<DoubleArray>
)

/** selftest.json: [seqLen] is the longest length bucket, [sequenceLengths] all of them (ascending). */
class SelfTestSpec(
    val seqLen: Int,
    val examples: List<GoldenExample>,
    val artifacts: Map<String, GoldenOutputs>,
    val sequenceLengths: List<Int> = listOf(seqLen)
) {
    companion object {
        @Suppress("UNCHECKED_CAST")
        fun parse(json: String): SelfTestSpec {
            val doc = MiniJson.parse(json) as? Map<String, Any?>
                ?: throw BundleException("selftest.json is not a JSON object")
            if (doc["format"] != "xlnet-edge-selftest" || doc["version"] != 1.0) {
                throw BundleException("selftest.json is not a version-1 xlnet-edge selftest file")
            }
            fun ints(value: Any?) = (value as List<Double>).map { it.toInt() }.toIntArray()
            val examples = (doc["examples"] as List<Map<String, Any?>>).map {
                val ids = ints(it["input_ids"])
                GoldenExample(it["text"] as String, it["pair"] as? String, ids, ints(it["attention_mask"]),
                              ints(it["token_type_ids"]), (it["sequence_length"] as? Double)?.toInt() ?: ids.size)
            }
            val artifacts = (doc["artifacts"] as Map<String, Map<String, Any?>>).mapValues { (_, a) ->
                GoldenOutputs(a["sha256"] as String, a["runtime"] as String, a["atol"] as Double,
                              a["tolerance"] as String,
                              (a["logits"] as List<List<Double>>).map { row -> row.toDoubleArray() })
            }
            val seqLen = (doc["seq_len"] as Double).toInt()
            val lengths = (doc["sequence_lengths"] as? List<Double>)?.map { it.toInt() }?.sorted()
            return SelfTestSpec(seqLen, examples, artifacts, if (lengths.isNullOrEmpty()) listOf(seqLen) else lengths)
        }
    }
}

/** The outcome: [passed], and one line per check (what was compared, the figure, the tolerance used). */
class SelfTestResult(val passed: Boolean, val lines: List<String>)

/** The manifest's "selftest" record as an artifact-like record, so it is checked like a model before it is read. */
fun selfTestRecord(bundle: BundleSpec): ArtifactSpec {
    val file = bundle.selfTestFile ?: throw BundleException("manifest.json lists no \"selftest\" file: the bundle " +
        "was exported without golden inputs (re-export it with a current toolkit)")
    return ArtifactSpec("selftest", file, "json", "cpu", true, emptyList(), bundle.selfTestSha256)
}

/**
 * Replays the golden inputs: each text must tokenize to the golden ids (exactly, at the length bucket
 * XLNetTokenizer.encodeBucketed picks, which is the one the golden ids were stored at), then each of [artifacts] must
 * give the expected logits within the selftest's tolerance. [logitsOf] runs one artifact on a list of tokenized
 * inputs of various lengths, each in the method/signature of its length (LiteRT or ExecuTorch on the phone). An
 * artifact without expected outputs, or whose file is not the one the outputs were computed for (sha256), is refused
 * with [BundleException]; one whose length buckets are not the tokenizer's, with IllegalArgumentException.
 */
fun runSelfTest(
    spec: SelfTestSpec,
    tokenizer: XLNetTokenizer,
    artifacts: List<ArtifactSpec>,
    logitsOf: (ArtifactSpec, List<Encoded>) -> List<FloatArray>
): SelfTestResult {
    val lines = ArrayList<String>()
    val encoded = spec.examples.map { tokenizer.encodeBucketed(it.text, it.pair) }
    val wrong = spec.examples.indices.filter { i ->
        val e = spec.examples[i]
        !(encoded[i].inputIds.size == e.sequenceLength && encoded[i].inputIds contentEquals e.inputIds &&
            encoded[i].attentionMask contentEquals e.attentionMask &&
            encoded[i].tokenTypeIds contentEquals e.tokenTypeIds)
    }
    var passed = wrong.isEmpty()
    lines += "tokenizer: ${spec.examples.size - wrong.size}/${spec.examples.size} texts give the golden input_ids, " +
        "attention_mask and token_type_ids (exact) -> ${if (passed) "PASS" else "FAIL"}"
    for (i in wrong) lines += "  text $i \"${spec.examples[i].text.take(50)}\": tokenized differently from the host"
    for (artifact in artifacts) {
        val golden = spec.artifacts[artifact.name]
            ?: throw BundleException("selftest.json has no expected outputs for ${artifact.name}: re-export the bundle")
        if (golden.sha256 != artifact.sha256) {
            throw BundleException("selftest.json's expected outputs for ${artifact.name} are for another file " +
                "(sha256 ${golden.sha256}, the manifest's is ${artifact.sha256}): re-export the bundle")
        }
        artifact.requireLengths(tokenizer.sequenceLengths)  // one method per length bucket of the tokenizer
        val got = logitsOf(artifact, encoded)
        var maxDiff = 0.0
        var sameLabels = 0
        if (got.size != golden.logits.size) maxDiff = Double.POSITIVE_INFINITY
        for (i in got.indices) {
            val want = golden.logits.getOrNull(i)
            if (want == null || want.size != got[i].size) {
                maxDiff = Double.POSITIVE_INFINITY
                continue
            }
            for (c in want.indices) maxDiff = maxOf(maxDiff, Math.abs(got[i][c].toDouble() - want[c]))
            if (argmax(got[i].map { it.toDouble() }) == argmax(want.toList())) sameLabels++
        }
        val ok = maxDiff <= golden.atol
        passed = passed && ok
        lines += "${artifact.name}: max |logit diff| ${g3(maxDiff)} <= tolerance ${g3(golden.atol)}? " +
            "${if (ok) "yes" else "NO"}; labels $sameLabels/${spec.examples.size} as " +
            "expected -> ${if (ok) "PASS" else "FAIL"}"
        lines += "  tolerance: ${golden.tolerance}"
        val perMethod = encoded.groupingBy { artifact.method(it.inputIds.size).name ?: "forward" }.eachCount()
        lines += "  methods: " + perMethod.entries.joinToString(", ") {
            "${it.key} (${it.value} text${if (it.value == 1) "" else "s"})"
        }
    }
    lines += "self-test: ${if (passed) "PASS" else "FAIL"}"
    return SelfTestResult(passed, lines)
}

/** [x] with 3 significant digits as C's and Python's "%.3g" print it (Java's %g keeps trailing zeros). */
fun g3(x: Double): String = when {
    x.isNaN() -> "nan"
    x.isInfinite() -> if (x > 0) "inf" else "-inf"
    x == 0.0 -> "0"
    Math.abs(x) < 1e-4 || Math.abs(x) >= 1e3 -> "%.2e".format(x)
    else -> BigDecimal(x).round(MathContext(3)).stripTrailingZeros().toPlainString()
}

private fun argmax(values: List<Double>): Int {
    var best = 0
    for (i in values.indices) if (values[i] > values[best]) best = i
    return best
}
