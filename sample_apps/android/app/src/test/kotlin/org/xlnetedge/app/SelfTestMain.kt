package org.xlnetedge.app

import org.xlnetedge.tokenizer.MiniJson
import org.xlnetedge.tokenizer.XLNetTokenizer
import java.io.File
import kotlin.system.exitProcess

/**
 * JVM check of the app's startup self-test (run by tests/test_sample_apps.py with kotlinc + java):
 *
 *   SelfTestMainKt BUNDLE OBSERVED.json
 *
 * Does what MainActivity does at startup — verifies selftest.json against the manifest (verifyModelFile), checks
 * that the Kotlin tokenizer gives the golden ids, and compares each default artifact's logits with the expected
 * ones — except that the logits come from OBSERVED.json ({"artifact name": [[logits per golden text], ...]}, what
 * the host runtimes give, each text run in its length bucket: there is no LiteRT or ExecuTorch on a plain JVM). The
 * inputs each golden text would be fed with are still built, for the method of its length (modelInputs), as the
 * classifiers do. Prints the result lines; exits 0 on PASS, 1 on FAIL, 2 when the bundle or selftest.json is refused.
 */
fun main(args: Array<String>) {
    val bundle = File(args[0])
    try {
        val spec = BundleSpec.parse(File(bundle, "manifest.json").readText(), File(bundle, "labels.json").readText())
        val selfTest = SelfTestSpec.parse(verifyModelFile(bundle, selfTestRecord(spec)).readText())
        val tokenizer = XLNetTokenizer.load(File(bundle, "tokenizer.json"))
        @Suppress("UNCHECKED_CAST")
        val observed = MiniJson.parse(File(args[1]).readText()) as Map<String, List<List<Double>>>
        val artifacts = listOf("tflite", "pte").mapNotNull { f -> spec.artifacts.firstOrNull { it.format == f && it.valid } }
        val result = runSelfTest(selfTest, tokenizer, artifacts) { artifact, inputs ->
            val rows = observed[artifact.name] ?: throw IllegalArgumentException("no observed logits for ${artifact.name}")
            require(rows.size == inputs.size) { "observed logits for ${rows.size} texts, ${inputs.size} golden texts" }
            for (input in inputs) modelInputs(artifact, input, spec.maskValue)  // the method of its length exists
            rows.map { row -> FloatArray(row.size) { row[it].toFloat() } }
        }
        result.lines.forEach { println(it) }
        exitProcess(if (result.passed) 0 else 1)
    } catch (err: IllegalArgumentException) {  // BundleException and the manifest's own errors
        System.err.println("SelfTestMain: error: ${err.message}")
        exitProcess(2)
    }
}
