from charmpy import *
import numpy

class Worker(Chare):
    def work(self):
        data = numpy.arange(20)
        self.contribute(data, Reducer.sum, self.thisProxy[0].getResult)
    def getResult(self, result):
        print(result)
        charm.exit()

def main(args):
    array = Array(Worker, 100)
    array.work()

charm.start(main)
